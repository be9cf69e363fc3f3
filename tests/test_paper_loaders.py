"""The ten ``paper`` loaders read tiny fakes of their datasets in the real on-disk formats
(``paper_fakes.py``), through the normal path ``get_task(name).load(split, data_root=...)``.

Checked: every image a loader returns is the file of that split with the label of its class
folder / annotation (the label and the image's colour agree), class counts, the paper's own
splits (EuroSAT per-class sampling as IIMM, SUN397 partition files, RESISC45 split lists),
that each task JSON's i-th class name is the dataset's i-th class, and the one-line
message when the data are missing.
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.suites import get_suite
from estimators.errors import InvalidInput
from tasks import TaskUnavailable, get_task

from . import paper_fakes
from .paper_fakes import class_ids, decode

PAPER = sorted(paper_fakes.WRITERS)

# torchvision EuroSAT folder -> the task's class name (IIMM's ``ours_to_open_ai`` table, datasets/eurosat.py)
EUROSAT_NAMES = {
    "AnnualCrop": "annual crop land", "Forest": "forest", "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "highway or road", "Industrial": "industrial buildings or commercial buildings",
    "Pasture": "pasture land", "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings or homes or apartments", "River": "river", "SeaLake": "lake or sea",
}
# GTSRB ClassId (= training folder) -> (the sign it is, per the GTSRB class list; the task's class name)
GTSRB_NAMES = {
    "00000": ("Speed limit (20km/h)", "red and white circle 20 kph speed limit"),
    "00001": ("Speed limit (30km/h)", "red and white circle 30 kph speed limit"),
    "00002": ("Speed limit (50km/h)", "red and white circle 50 kph speed limit"),
    "00003": ("Speed limit (60km/h)", "red and white circle 60 kph speed limit"),
    "00004": ("Speed limit (70km/h)", "red and white circle 70 kph speed limit"),
    "00005": ("Speed limit (80km/h)", "red and white circle 80 kph speed limit"),
    "00006": ("End of speed limit (80km/h)", "end / de-restriction of 80 kph speed limit"),
    "00007": ("Speed limit (100km/h)", "red and white circle 100 kph speed limit"),
    "00008": ("Speed limit (120km/h)", "red and white circle 120 kph speed limit"),
    "00009": ("No passing", "red and white circle red car and black car no passing"),
    "00010": ("No passing for vehicles over 3.5 metric tons",
              "red and white circle red truck and black car no passing"),
    "00011": ("Right-of-way at the next intersection", "red and white triangle road intersection warning"),
    "00012": ("Priority road", "white and yellow diamond priority road"),
    "00013": ("Yield", "red and white upside down triangle yield right-of-way"),
    "00014": ("Stop", "stop"),
    "00015": ("No vehicles", "empty red and white circle"),
    "00016": ("Vehicles over 3.5 metric tons prohibited", "red and white circle no truck entry"),
    "00017": ("No entry", "red circle with white horizonal stripe no entry"),
    "00018": ("General caution", "red and white triangle with exclamation mark warning"),
    "00019": ("Dangerous curve to the left", "red and white triangle with black left curve approaching warning"),
    "00020": ("Dangerous curve to the right", "red and white triangle with black right curve approaching warning"),
    "00021": ("Double curve", "red and white triangle with black double curve approaching warning"),
    "00022": ("Bumpy road", "red and white triangle rough / bumpy road warning"),
    "00023": ("Slippery road", "red and white triangle car skidding / slipping warning"),
    "00024": ("Road narrows on the right", "red and white triangle with merging / narrow lanes warning"),
    "00025": ("Road work", "red and white triangle with person digging / construction / road work warning"),
    "00026": ("Traffic signals", "red and white triangle with traffic light approaching warning"),
    "00027": ("Pedestrians", "red and white triangle with person walking warning"),
    "00028": ("Children crossing", "red and white triangle with child and person walking warning"),
    "00029": ("Bicycles crossing", "red and white triangle with bicyle warning"),
    "00030": ("Beware of ice/snow", "red and white triangle with snowflake / ice warning"),
    "00031": ("Wild animals crossing", "red and white triangle with deer warning"),
    "00032": ("End of all speed and passing limits", "white circle with gray strike bar no speed limit"),
    "00033": ("Turn right ahead", "blue circle with white right turn arrow mandatory"),
    "00034": ("Turn left ahead", "blue circle with white left turn arrow mandatory"),
    "00035": ("Ahead only", "blue circle with white forward arrow mandatory"),
    "00036": ("Go straight or right", "blue circle with white forward or right turn arrow mandatory"),
    "00037": ("Go straight or left", "blue circle with white forward or left turn arrow mandatory"),
    "00038": ("Keep right", "blue circle with white keep right arrow mandatory"),
    "00039": ("Keep left", "blue circle with white keep left arrow mandatory"),
    "00040": ("Roundabout mandatory", "blue circle with white arrows indicating a traffic circle"),
    "00041": ("End of no passing", "white circle with gray strike bar indicating no passing for cars has ended"),
    "00042": ("End of no passing by vehicles over 3.5 metric tons",
              "white circle with gray strike bar indicating no passing for trucks has ended"),
}
# the dataset's class identifier -> the task's class name
TASK_NAME = {
    "cars": lambda i: i,
    "cifar100": lambda i: i.replace("_", " "),
    "dtd": lambda i: i,
    "eurosat": EUROSAT_NAMES.get,
    "gtsrb_paper": lambda i: GTSRB_NAMES[i][1],
    "mnist_paper": lambda i: i,
    "resisc45": lambda i: i.replace("_", " "),
    "stl10": lambda i: i,
    "sun397": lambda i: i[3:].replace("_", " ").replace("/", " "),  # "/b/bakery/shop" -> "bakery shop"
    "svhn": lambda i: i,
}


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    """A data root holding all ten fakes, and ``task -> split -> [(class, number), ...]``."""
    root = tmp_path_factory.mktemp("paper-data")
    written = paper_fakes.write_all(root)
    written["eurosat"] = eurosat_iimm_split(written["eurosat"]["all"])
    with pytest.MonkeyPatch.context() as patch:
        paper_fakes.accept_fake_md5(patch)
        yield root, written


def eurosat_iimm_split(items, fraction=0.9, random_state=1) -> dict:
    """IIMM's EuroSAT split, re-derived without pandas. torchvision's EuroSAT (an ImageFolder)
    orders images by class folder, then file name; ``DataFrame.groupby(label).sample(frac,
    random_state)`` then draws, class after class from one ``RandomState``, ``round(frac * n)``
    positions without replacement (``RandomState.choice``)."""
    state = np.random.RandomState(random_state)
    train = []
    for c, folder in enumerate(class_ids("eurosat")):
        numbers = sorted((k for cc, k in items if cc == c), key=lambda k: f"{folder}_{k + 1}.jpg")
        chosen = state.choice(len(numbers), size=round(fraction * len(numbers)), replace=False)
        train += [(c, numbers[i]) for i in chosen]
    return {"train": train, "test": sorted(set(items) - set(train))}


def test_every_paper_task_has_a_fake_with_its_real_class_list():
    assert PAPER == sorted(get_suite("paper").tasks)
    for name in PAPER:
        assert len(set(class_ids(name))) == len(class_ids(name)) == get_task(name).n_classes


@pytest.mark.parametrize("name", PAPER)
def test_class_names_follow_the_dataset_class_order(name):
    """The JSON's i-th class name names the dataset's i-th class (its label i)."""
    assert [TASK_NAME[name](i) for i in class_ids(name)] == list(get_task(name).classnames)


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", PAPER)
def test_loader_gives_the_files_of_the_split_with_their_labels(fakes, name, split):
    root, written = fakes
    task = get_task(name)
    loaded = task.load(split, data_root=root)
    found = [decode(name, image) for image in loaded.images]
    assert all(image.mode == "RGB" for image in loaded.images)
    assert [c for c, _ in found] == loaded.labels.tolist()  # each image carries its class's label
    assert sorted(found) == sorted(written[name][split])  # exactly the files of this split
    counts = np.bincount([c for c, _ in written[name][split]], minlength=task.n_classes)
    assert np.bincount(loaded.labels, minlength=task.n_classes).tolist() == counts.tolist()
    assert loaded.labels.min() == 0 and loaded.labels.max() == task.n_classes - 1
    assert np.array_equal(task.labels(split, data_root=root), loaded.labels)


@pytest.mark.parametrize("name", PAPER)
def test_subsample_is_one_per_class_and_repeatable(fakes, name):
    root, _ = fakes
    task = get_task(name)
    first = task.load("train", data_root=root, n=task.n_classes, seed=3)
    again = task.load("train", data_root=root, n=task.n_classes, seed=3)
    assert sorted(first.labels.tolist()) == list(range(task.n_classes))
    assert np.array_equal(first.indices, again.indices)
    assert [decode(name, image)[0] for image in first.images] == first.labels.tolist()


def test_paper_splits_have_the_specified_sizes(fakes):
    """Per-class counts of the paper's own splits on the fakes, worked out by hand."""
    root, _ = fakes
    per_class = {name: {split: np.bincount(get_task(name).labels(split, data_root=root)).tolist()
                        for split in ("train", "test")} for name in ("eurosat", "sun397", "resisc45", "dtd")}
    # EuroSAT: round(0.9 n) of each class (Python rounds 4.5 to 4 and 13.5 to 14, as pandas does)
    assert paper_fakes.EUROSAT_SIZES == [10, 11, 12, 13, 14, 15, 5, 7, 9, 30]
    assert per_class["eurosat"] == {"train": [9, 10, 11, 12, 13, 14, 4, 6, 8, 27], "test": [1] * 9 + [3]}
    # SUN397: Training_01 / Testing_01 only (partition 2 and unlisted images are left out)
    assert per_class["sun397"] == {"train": [2] * 397, "test": [1] * 397}
    # RESISC45: resisc45-train.txt / resisc45-test.txt (the val list is left out); DTD: train1 / val1
    assert per_class["resisc45"] == {"train": [3] * 45, "test": [2] * 45}
    assert per_class["dtd"] == {"train": [2] * 47, "test": [1] * 47}


def test_declared_eurosat_sizes_follow_from_the_real_class_sizes():
    real = [3000, 3000, 3000, 2500, 2500, 2000, 2500, 3000, 2500, 3000]  # EuroSAT RGB, folder order
    train = sum(round(0.9 * n) for n in real)
    assert get_task("eurosat").splits == {"train": train, "test": sum(real) - train} == {"train": 24300, "test": 2700}


@pytest.mark.parametrize("name, looked_for", [
    ("cifar100", "torchvision CIFAR100 not found under {root} (Dataset not found or corrupted."),
    ("svhn", "torchvision SVHN not found under {root}/svhn ("),
    ("cars", "torchvision StanfordCars not found under {root} (Dataset not found.)"),
])
def test_missing_dataset_is_one_line(tmp_path, name, looked_for):
    with pytest.raises(TaskUnavailable) as info:
        get_task(name).load("train", data_root=tmp_path, n=5)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"task {name!r} is unavailable: ")
    assert looked_for.format(root=tmp_path) in message
    assert ("download=True" in message) == (name != "cars")  # torchvision can no longer download Stanford Cars


def test_missing_sun397_partition_names_both_places(tmp_path):
    (tmp_path / "SUN397").mkdir()
    (tmp_path / "SUN397" / "ClassName.txt").write_text("\n".join(class_ids("sun397")) + "\n")
    with pytest.raises(TaskUnavailable) as info:
        get_task("sun397").load("test", data_root=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert f"{tmp_path}/SUN397/Testing_01.txt or {tmp_path}/Testing_01.txt" in message


@pytest.mark.parametrize("name, listing, line", [
    ("sun397", "Testing_01.txt", "/n/nowhere/sun_aaaaaaaaaaaaaaaa.jpg"),
    ("resisc45", "resisc45/resisc45-test.txt", "nowhere_001.jpg"),
])
def test_a_list_naming_a_class_the_dataset_lacks_is_one_line(tmp_path, name, listing, line):
    (tmp_path / "SUN397").mkdir()
    (tmp_path / "SUN397" / "ClassName.txt").write_text("/a/abbey\n")
    (tmp_path / "resisc45" / "NWPU-RESISC45" / "airplane").mkdir(parents=True)
    (tmp_path / listing).write_text(line + "\n")
    with pytest.raises(InvalidInput, match=r"names 1 class\(es\) the dataset does not have, e\.g\. 'n") as info:
        get_task(name).load("test", data_root=tmp_path)
    assert "\n" not in str(info.value)
