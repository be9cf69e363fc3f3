"""Third-party estimators: entry-point discovery (a fake installed distribution on sys.path,
nothing pip-installed), a broken plugin reported and skipped, and the --plugins escape hatch."""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = textwrap.dedent('''
    """A plugin estimator: mean squared norm of the class means (toy, but a real score)."""
    import numpy as np
    from estimators import Estimator, register_estimator

    @register_estimator("{name}")
    class ClassMeanNorm(Estimator):
        """Mean over classes of ||mu_c||^2, mu_c the class mean of the unit-norm features
        (higher when classes are tight); a toy estimator for the plugin tests."""
        description = "mean squared norm of class means"
        citation = "transferbench plugin test"

        def compute(self, emb):
            x = emb.image.astype(np.float64)
            means = np.stack([x[emb.labels == c].mean(axis=0) for c in np.unique(emb.labels)])
            return float(np.mean(np.sum(means ** 2, axis=1)))
''')


def run_cli(*args, pythonpath=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


@pytest.fixture
def site(tmp_path):
    """A folder that looks like site-packages holding one good and one broken distribution."""
    (tmp_path / "good_plugin.py").write_text(PLUGIN.format(name="class_mean_norm"))
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('this plugin is broken on purpose')\n")
    for dist, module in (("good_plugin", "good_plugin"), ("broken_plugin", "broken_plugin")):
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[transferbench.estimators]\n{dist} = {module}\n")
    return tmp_path


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "emb.npz"
    np.savez(path, image_features=rng.normal(size=(40, 8)), labels=np.repeat(np.arange(4), 10),
             text_features=rng.normal(size=(4, 8)), logit_scale=np.float64(100.0))
    return path


@pytest.mark.e2e
def test_entry_point_plugin_is_listed_and_broken_one_reported(site):
    result = run_cli("ls", "estimators", pythonpath=str(site))
    assert result.returncode == 0, result.stderr
    assert "class_mean_norm" in result.stdout
    assert "broken_plugin" in result.stderr and "this plugin is broken on purpose" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_entry_point_plugin_scores(site, npz):
    result = run_cli("score", "--embeddings", str(npz), "--estimators", "class_mean_norm,iimm",
                     "--format", "json", pythonpath=str(site))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["estimators"]) == {"class_mean_norm", "iimm"}
    assert 0 < report["estimators"]["class_mean_norm"]["score"] <= 1


@pytest.mark.e2e
def test_plugins_flag_takes_a_file(tmp_path, npz):
    plugin = tmp_path / "my_estimator.py"
    plugin.write_text(PLUGIN.format(name="file_plugin_score"))
    result = run_cli("score", "--embeddings", str(npz), "--estimators", "file_plugin_score",
                     "--plugins", str(plugin), "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("file_plugin_score,")


@pytest.mark.e2e
def test_plugins_flag_with_a_missing_module_is_one_line(npz):
    result = run_cli("score", "--embeddings", str(npz), "--plugins", "no_such_module_xyz")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no_such_module_xyz" in result.stderr


def readme_example() -> str:
    """The complete estimator example of the README's "Add an estimator" section."""
    readme = (ROOT / "README.md").read_text()
    return re.search(r"`my_estimators.py`\):\n\n```python\n(.*?)```", readme, re.S).group(1)


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["class_mean_norm", "fisher_ratio"])
def test_contract_suite_runs_on_plugins(site, name):
    """The registry-wide contract tests pick up an installed plugin with no extra code; the
    README's example estimator passes them too."""
    (site / "readme_plugin.py").write_text(readme_example())
    info = site / "readme_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: readme_plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[transferbench.estimators]\nreadme = readme_plugin\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(ROOT / "tests" / "test_estimator_contract.py"), "-k", name],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 8, result.stdout[-2000:]


def test_the_readmes_contract_snippet_checks_its_example(monkeypatch):
    """The README's check_estimator / parametrize_with_checks snippet, run as written on its example."""
    import types

    from estimators import ESTIMATORS

    section = (ROOT / "README.md").read_text().split("## Add an estimator", 1)[1].split("\n## ", 1)[0]
    example, snippet = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    assert "check_estimator(" in snippet and "parametrize_with_checks(" in snippet
    with ESTIMATORS.scoped():
        module = types.ModuleType("my_estimators")
        monkeypatch.setitem(sys.modules, "my_estimators", module)
        exec(example, module.__dict__)
        namespace: dict = {}
        exec(snippet, namespace)  # check_estimator("fisher_ratio") passes, the decorator builds its cases
        cases = namespace["test_contract"].pytestmark[0].args[1]
        assert {check.__name__ for _, check in cases} >= {"check_metadata", "check_invariant_to_sample_order"}


def test_a_plugin_that_calls_sys_exit_is_reported_like_any_failing_plugin(tmp_path, capsys):
    """Issue 21: `sys.exit(3)` at import, or inside compute, is one line, not a silent exit."""
    from benchmark.cli import main
    from estimators import ESTIMATORS
    from estimators.checks import synthetic

    at_import = tmp_path / "exits.py"
    at_import.write_text("import sys\nsys.exit(3)\n")
    npz = tmp_path / "e.npz"
    emb = synthetic("separable")
    np.savez(npz, image_features=emb.image, labels=emb.labels)
    assert main(["score", "--embeddings", str(npz), "--plugins", str(at_import)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exits.py failed to import: SystemExit: 3" in err
    in_compute = tmp_path / "exits_in_compute.py"
    in_compute.write_text(
        "import sys\nfrom estimators import Estimator, register_estimator\n\n\n"
        "@register_estimator('exits_in_compute')\nclass Exits(Estimator):\n"
        "    \"\"\"Calls sys.exit while scoring (a test plugin).\"\"\"\n"
        "    def compute(self, emb):\n        sys.exit(3)\n")
    with ESTIMATORS.scoped():
        assert main(["score", "--embeddings", str(npz), "--plugins", str(in_compute),
                     "--estimators", "exits_in_compute,knn"]) == 2
    err = capsys.readouterr().err
    assert "exits_in_compute failed: SystemExit: 3" in err
