"""The task registry: definitions as declared, loaders against the offline data, sampling, errors.

Reads the offline datasets from ``$TRANSFERBENCH_DATA`` or ``../shared/data`` beside the
repository; tests that need them are skipped where they are absent.
"""
import gzip
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.suites import builtin_suites
from estimators.errors import InvalidInput
from estimators.registry import UnknownName
from tasks import LOADERS, TASKS, TaskUnavailable, balanced_indices, data_root, get_task, list_tasks
from tasks.sampling import class_quotas
from tasks.task_file import read_definitions

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFERBENCH_DATA") or REPO.parent / "shared" / "data")
MINI = ["cifar10", "cifar10_vehicles", "cifar10_animals", "mnist", "digits", "gtsrb", "flowers", "notmnist",
        "pneumoniamnist", "imagenette", "imagewoof", "intelscenes"]
PAPER = ["cars", "cifar100", "dtd", "eurosat", "gtsrb_paper", "mnist_paper", "resisc45", "stl10", "sun397", "svhn"]
# side of the stored images (square; 3 Intel scenes are 150 px wide and 110/113 px high, none drawn below)
IMAGE_SIDE = {"cifar10": 32, "cifar10_vehicles": 32, "cifar10_animals": 32, "mnist": 28, "digits": 8, "gtsrb": 32,
              "flowers": 128, "notmnist": 28, "pneumoniamnist": 28, "imagenette": 224, "imagewoof": 224,
              "intelscenes": 150}
README_TEMPLATES = {
    "cifar10": "a photo of a {c}.", "mnist": 'a photo of the number: "{c}".', "digits": 'a photo of the number: "{c}".',
    "gtsrb": 'a zoomed in photo of a "{c}" traffic sign.', "flowers": "a photo of a {c}, a type of flower.",
    "notmnist": 'a photo of the letter "{c}".', "pneumoniamnist": "a chest X-ray image of {c}.",
    "imagenette": "a photo of a {c}.", "imagewoof": "a photo of a {c}, a type of dog.",
    "intelscenes": "a photo of the {c}.",
}
IIMM_TEMPLATES = {
    "cars": "a photo of a {c}", "cifar100": "a photo of a {c}", "dtd": "a photo of a {c} texture",
    "eurosat": "a centered satellite photo of a {c}", "gtsrb_paper": 'a photo of a "{c}" traffic sign',
    "mnist_paper": 'a photo of the number: "{c}"', "resisc45": "satellite imagery of {c}",
    "stl10": "a photo of a {c}", "sun397": "a photo of a {c}", "svhn": 'a photo of the number: "{c}"',
}
CLASS_COUNTS = {"cifar10": 10, "cifar10_vehicles": 4, "cifar10_animals": 6, "mnist": 10, "digits": 10, "gtsrb": 43,
                "flowers": 5, "notmnist": 10, "pneumoniamnist": 2, "imagenette": 10, "imagewoof": 10,
                "intelscenes": 6, "cars": 196, "cifar100": 100, "dtd": 47,
                "eurosat": 10, "gtsrb_paper": 43, "mnist_paper": 10, "resisc45": 45, "stl10": 10, "sun397": 397,
                "svhn": 10}


def _present(task) -> bool:
    folder = task.loader_args.get("folder")
    return task.loader == "sklearn_digits" or (folder is not None and (SHARED / folder).is_dir())


@pytest.fixture(scope="module")
def root() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"offline data not found at {SHARED}")
    return SHARED


def test_suites_hold_the_expected_tasks():
    suites = builtin_suites()
    assert set(MINI) <= set(suites["mini"].tasks)
    assert sorted(suites["paper"].tasks) == sorted(PAPER)
    mini = suites["mini"].tasks
    assert len(mini) == 12 and len({get_task(t).dataset for t in mini}) == 10
    assert list_tasks("cifar10_*") == ["cifar10_animals", "cifar10_vehicles"]
    assert {t for s in suites.values() for t in s.tasks} == set(TASKS.names())  # every registered task has a suite


@pytest.mark.parametrize("name", ["imagenette", "imagewoof"])
def test_imagenet_subsets_state_the_leakage(name):
    description = get_task(name).description
    assert "ImageNet leakage" in description and "in-distribution" in description


@pytest.mark.parametrize("name", sorted(TASKS.names()))
def test_definition_contract(name):
    task = get_task(name)
    assert task.id == name and task.version >= 1 and task.source
    assert task.n_classes == CLASS_COUNTS.get(name, task.n_classes) == len(set(task.classnames))
    assert all(c.strip() == c and c for c in task.classnames)
    assert set(task.splits) == {"train", "test"} and all(v > 0 for v in task.splits.values())
    assert task.loader in LOADERS
    assert all(t.count("{c}") == 1 for t in task.templates)
    assert len(set(task.templates)) == len(task.templates)
    assert task.prompts() == [task.template.replace("{c}", c) for c in task.classnames]
    assert len(task.prompts(len(task.templates) - 1)) == task.n_classes
    if name in MINI:
        assert task.template == README_TEMPLATES[name.split("_")[0]]
        assert 3 <= len(task.templates) <= 7  # canonical + 2-6 for ensembles
    elif name in PAPER:
        assert task.template == IIMM_TEMPLATES[name]


def test_prompts_fill_the_class_name():
    task = get_task("pneumoniamnist")
    assert task.prompts() == ["a chest X-ray image of normal lungs.", "a chest X-ray image of pneumonia."]
    assert get_task("gtsrb").prompts()[1] == 'a zoomed in photo of a "speed limit 30 km/h" traffic sign.'


@pytest.mark.parametrize("name", MINI)
def test_declared_split_sizes_and_classes(name, root):
    task = get_task(name)
    if not _present(task):
        pytest.skip(f"{name}: data absent")
    for split, size in task.splits.items():
        labels = task.labels(split, root)
        assert labels.dtype == np.int64 and labels.size == size
        assert np.array_equal(np.unique(labels), np.arange(task.n_classes))
    folder = task.loader_args.get("folder")
    if folder and task.class_subset is None:  # JSON names are the classes.tsv names, in index order
        rows = (root / folder / "classes.tsv").read_text(encoding="utf-8").splitlines()[1:]
        assert [r.split("\t")[1] for r in rows] == list(task.classnames)


@pytest.mark.parametrize("name", MINI)
def test_images_decode_to_rgb_with_the_right_size(name, root):
    task = get_task(name)
    if not _present(task):
        pytest.skip(f"{name}: data absent")
    sample = task.load("test", root, n=2 * task.n_classes, seed=1)
    assert sample.n == len(sample.images) == 2 * task.n_classes and sample.split == "test"
    assert {im.mode for im in sample.images} == {"RGB"}
    assert {im.size for im in sample.images} == {(IMAGE_SIDE[name],) * 2}
    if task.class_subset is None:  # a subset's indices point into the parent's split (tested below)
        assert np.array_equal(sample.labels, task.labels("test", root)[sample.indices])
    assert np.bincount(sample.labels).tolist() == [2] * task.n_classes
    assert sample.source and sample.task_id == name


def test_mnist_labels_and_pixels_match_the_raw_files(root):
    task = get_task("mnist")
    assert task.labels("test", root)[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    with gzip.open(root / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    test = task.load("test", root, n=10, seed=3)
    for image, i in zip(test.images, test.indices):
        assert np.array_equal(np.asarray(image)[..., 0], raw[i])
    with gzip.open(root / "mnist" / "mnist_5k.csv.gz", "rt") as f:
        rows = [f.readline() for _ in range(3)]
    train = task.load("train", root, n=None)
    for i, row in enumerate(rows):
        values = np.asarray(row.split(","), dtype=np.uint8)
        assert train.labels[i] == values[-1]
        assert np.array_equal(np.asarray(train.images[i])[..., 1], values[:784].reshape(28, 28))


@pytest.mark.parametrize("name", ["notmnist", "imagewoof", "intelscenes"])
def test_tar_images_match_the_readme_loader(name, root):
    """Cross-check image/label pairs against an independent read of the archive (README's loader)."""
    task = get_task(name)
    if not _present(task):
        pytest.skip(f"{name}: data absent")
    sample = task.load("test", root, n=20, seed=5)
    folder = root / task.loader_args["folder"]
    rows = (folder / "classes.tsv").read_text(encoding="utf-8").splitlines()[1:]
    index = {r.split("\t")[0]: i for i, r in enumerate(rows)}
    with tarfile.open(folder / task.loader_args["archive"]) as tf:
        members = [m for m in tf if m.name.startswith("test/")]
        for image, label, i in zip(sample.images, sample.labels, sample.indices):
            member = members[i]
            assert index[member.name.split("/")[1]] == label
            expected = Image.open(io.BytesIO(tf.extractfile(member).read())).convert("RGB")
            assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_digits_split_is_first_100_then_50_per_class():
    from sklearn.datasets import load_digits

    digits = load_digits()
    task = get_task("digits")
    train, test = task.labels("train"), task.labels("test")
    assert np.bincount(train).tolist() == [100] * 10 and np.bincount(test).tolist() == [50] * 10
    first_zeros = np.flatnonzero(digits.target == 0)
    images = task.load("train", n=None).images
    image = np.asarray(images[0])[..., 2]
    assert np.array_equal(image, np.rint(digits.images[first_zeros[0]] * 255 / 16).astype(np.uint8))
    assert max(np.asarray(im).max() for im in images) == 255  # 16 -> 255


def test_subsampling_is_deterministic_and_balanced(root):
    task = get_task("gtsrb")
    a, b = task.load("train", root, n=100, seed=7), task.load("train", root, n=100, seed=7)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.indices, task.load("train", root, n=100, seed=8).indices)
    counts = np.bincount(a.labels, minlength=43)
    assert counts.sum() == 100 and counts.max() - counts.min() <= 1
    assert np.all(np.diff(a.indices) > 0)


def test_subset_of_a_sample_returns_those_items(root):
    task = get_task("flowers")
    if not _present(task):
        pytest.skip("flowers: data absent")
    whole = task.load("test", root, n=20, seed=2)
    pick = np.array([3, 0, 17])
    part = task.load("test", root, n=20, seed=2, subset=pick)
    assert np.array_equal(part.labels, whole.labels[pick]) and np.array_equal(part.indices, whole.indices[pick])
    assert all(np.array_equal(np.asarray(a), np.asarray(whole.images[i])) for a, i in zip(part.images, pick))


def test_class_quotas_share_out_what_small_classes_lack():
    assert class_quotas(np.array([2, 10, 10]), 12).tolist() == [2, 5, 5]
    assert class_quotas(np.array([2, 10, 10]), 13).tolist() == [2, 6, 5]
    assert class_quotas(np.array([3, 3]), 100).tolist() == [3, 3]
    labels = np.repeat([0, 1, 2], [5, 50, 50])
    chosen = balanced_indices(labels, 31, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [5, 13, 13]
    assert np.array_equal(chosen, balanced_indices(labels, 31, seed=0))
    assert balanced_indices(labels, None).tolist() == list(range(105))


def test_split_smaller_than_n_is_given_whole(root):
    sample = get_task("pneumoniamnist").load("test", root, n=500)
    assert sample.n == 468 and sorted(sample.indices.tolist()) == list(range(468))


@pytest.mark.parametrize("name, parent_classes", [("cifar10_vehicles", [0, 1, 8, 9]),
                                                  ("cifar10_animals", [2, 3, 4, 5, 6, 7])])
def test_class_subset_reindexes_labels(name, parent_classes, root):
    task = get_task(name)
    sample = task.load("test", root, n=3 * task.n_classes, seed=0)
    assert sorted(set(sample.labels.tolist())) == list(range(len(parent_classes)))
    parent_labels = get_task("cifar10").labels("test", root)
    assert np.array_equal(parent_labels[sample.indices], np.asarray(parent_classes)[sample.labels])
    parent_names = get_task("cifar10").classnames
    assert list(task.classnames) == [parent_names[c] for c in parent_classes]


@pytest.mark.parametrize("name, looked_for", [("flowers", "flowers/flowers-128px-jpg.tar"),
                                              ("resisc45", "resisc45/resisc45-test.txt"),
                                              ("sun397", "SUN397/ClassName.txt")])
def test_absent_task_says_what_was_looked_for(name, looked_for, tmp_path):
    with pytest.raises(TaskUnavailable) as info:
        get_task(name).load("test", tmp_path, n=5)
    message = str(info.value)
    assert isinstance(info.value, InvalidInput) and "\n" not in message
    assert str(tmp_path / looked_for) in message and f"task {name!r} is unavailable" in message


def test_absent_offline_copy_falls_back_only_to_an_existing_torchvision_copy(tmp_path):
    with pytest.raises(TaskUnavailable) as info:
        get_task("mnist").load("test", tmp_path, n=5, download=False)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz") in message
    assert "torchvision MNIST not found" in message and "download=True" in message


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownName, match="did you mean 'cifar10'"):
        get_task("cifar1")
    with pytest.raises(InvalidInput, match="no split 'val'"):
        get_task("digits").load("val")


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFERBENCH_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("TRANSFERBENCH_DATA")
    assert data_root() == Path.home() / ".cache" / "transferbench" / "data"


def test_definition_files_are_validated(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "bad", "colour": "red"}')
    with pytest.raises(InvalidInput, match=f"task file {bad}: key 'colour': unknown key"):
        read_definitions(tmp_path)
    bad.write_text('{"id": "bad", "version": 1, "classnames": ["a"], "templates": ["no placeholder"],'
                   ' "source": "", "loader": "tar", "splits": {"train": 1, "test": 1}}')
    with pytest.raises(InvalidInput, match=f"task file {bad}: key 'templates': .* with {{c}} where the class name"):
        read_definitions(tmp_path)
    bad.write_text('{"id": "other", "version": 1}')
    with pytest.raises(InvalidInput, match="key 'id': must be the file name 'bad'"):
        read_definitions(tmp_path)
