"""A user's task file and the ``imagefolder`` loader: labels by sorted class folder, class names from
the file or the folders, the listing digest in the cache keys, and one clear line for every fault."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest
from PIL import Image

from encoders.extract import cache_spec
from estimators.errors import InvalidInput
from tasks import get_task, load_task_file, read_task_file

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def write_folder(root, classes=COLOURS, n_train=3, n_test=2):
    """``root/{train,test}/<class>/<i>.png``: 8x8 images of one colour per class, a pixel set by ``i``."""
    for split, n in (("train", n_train), ("test", n_test)):
        for name, rgb in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.full((8, 8, 3), rgb, np.uint8)
                pixels[0, 0] = i
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def task_file(tmp_path, **spec):
    path = tmp_path / "colours.json"
    path.write_text(json.dumps({"loader": "imagefolder", "loader_args": {"path": "images"}, **spec}))
    return path


def test_labels_follow_the_sorted_class_folders_and_images_decode(tmp_path):
    write_folder(tmp_path / "images")
    (tmp_path / "images" / "train" / "red" / "notes.txt").write_text("not an image")
    (tmp_path / "images" / "train" / "red" / ".hidden.png").write_bytes(b"")
    task = read_task_file(task_file(tmp_path))
    assert (task.id, task.version, task.classnames, task.templates) == ("colours", 1, ("blue", "green", "red"),
                                                                        ("a photo of a {c}.",))
    assert task.splits == {"train": 9, "test": 6} and len(task.data_digest) == 64
    assert task.loader_args["path"] == str(tmp_path / "images")  # relative to the task file
    sample = task.load("train", n=None)
    assert sample.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for image, label, i in zip(sample.images, sample.labels, [0, 1, 2] * 3):
        assert image.mode == "RGB" and image.getpixel((1, 1)) == list(COLOURS.values())[label]
        assert image.getpixel((0, 0))[0] == i


def test_class_names_from_the_file_name_the_sorted_folders(tmp_path):
    write_folder(tmp_path / "images")
    task = read_task_file(task_file(tmp_path, id="sky", classnames=["navy", "grass", "fire"],
                                    templates=["a {c} square.", "a square of {c}."]))
    assert task.id == "sky" and task.prompts(1) == ["a square of navy.", "a square of grass.", "a square of fire."]
    with pytest.raises(InvalidInput, match=r"key 'classnames': 2 names for the 3 class folders \(blue, green, red\)"):
        read_task_file(task_file(tmp_path, classnames=["navy", "grass"]))


def test_the_listing_digest_follows_the_folder_into_the_cache_key(tmp_path):
    write_folder(tmp_path / "images")
    encoder = types.SimpleNamespace(id="E", weights_tag="W", preprocess_cfg=dict)
    first = read_task_file(task_file(tmp_path))
    key = cache_spec(encoder, first, "train", 10, 0, "single")
    assert key["task_data"] == first.data_digest and read_task_file(task_file(tmp_path)) == first
    write_folder(tmp_path / "images", n_train=4)  # one more training image per class
    second = read_task_file(task_file(tmp_path))
    assert second.data_digest != first.data_digest and cache_spec(encoder, second, "train", 10, 0, "single") != key
    assert "task_data" not in cache_spec(encoder, get_task("digits"), "train", 10, 0, "single")


def test_a_registered_id_cannot_be_taken(tmp_path):
    write_folder(tmp_path / "images")
    with pytest.raises(InvalidInput, match="key 'id': task id 'digits' is taken by a registered task"):
        load_task_file(task_file(tmp_path, id="digits"))


@pytest.mark.parametrize("spec, key, problem", [
    ({"class_names": ["a"]}, "class_names", "unknown key (did you mean 'classnames'?"),
    ({"loader": None}, "loader", "must be the name of a loader ("),
    ({"loader": "imagefolders"}, "loader", "did you mean 'imagefolder'?"),
    ({"loader_args": {"folder": "images"}}, "loader_args",
     "missing a required argument: 'path'; this loader takes path"),
    ({"loader_args": {"path": "images", "size": 3}}, "loader_args", "unexpected keyword argument 'size'"),
    ({"templates": ["a photo"]}, "templates", "each with {c} where the class name goes"),
    ({"version": "2"}, "version", "an integer >= 0"),
    ({"parent": "cifar10"}, "parent", "defined in tasks/definitions only"),
    ({"loader_args": {"path": "nowhere"}}, "loader_args", "no train/ folder"),
])
def test_a_bad_task_file_is_one_line_naming_file_and_key(tmp_path, spec, key, problem):
    write_folder(tmp_path / "images")
    path = task_file(tmp_path, **spec)
    with pytest.raises(InvalidInput) as info:
        read_task_file(path)
    message = str(info.value)
    assert message.startswith(f"task file {path}: key {key!r}: ") and problem in message and "\n" not in message


@pytest.mark.parametrize("damage, problem", [
    (lambda root: (root / "test" / "red").rename(root / "test" / ".red"), "class folder 'red' is missing from test/"),
    (lambda root: [p.unlink() for p in (root / "train" / "green").iterdir()], "class 'green' has no images in train/"),
    (lambda root: (root / "test").rename(root / "val"), "no test/ folder"),
])
def test_a_bad_image_folder_is_one_line(tmp_path, damage, problem):
    damage(write_folder(tmp_path / "images"))
    with pytest.raises(InvalidInput) as info:
        read_task_file(task_file(tmp_path))
    assert problem in str(info.value) and str(tmp_path / "images") in str(info.value)


def test_an_image_that_cannot_be_decoded_is_one_line_when_read(tmp_path):
    write_folder(tmp_path / "images")
    (tmp_path / "images" / "test" / "blue" / "9.png").write_bytes(b"not a png")
    task = read_task_file(task_file(tmp_path))
    assert task.splits["test"] == 7
    with pytest.raises(InvalidInput, match=r"cannot decode test/blue/9\.png \(UnidentifiedImageError"):
        task.load("test", n=None)
