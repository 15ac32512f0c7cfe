"""Where the official ABAW4 data keeps each split (see docs/abaw4.md), and the names in it.

    mtl: training_set_annotations.txt, validation_set_annotations.txt,
         MTL_Challenge_test_set_release.txt; images under cropped_aligned/<video>/<frame>.jpg
    lsd: training_set_synthetic_images/<CLASS>/*.jpg, validation_set_real_images/<CLASS>/*.jpg,
         LSD_Challenge_test_set_release.txt with its images in test_set_images/ or test_set/

Where the LSD test images live is not stated by the challenge material, so the reader looks
in each folder of :data:`LSD_TEST_IMAGE_FOLDERS` (or the one a user names); the generator
writes the first. Every plugin that writes or reads this layout (the readers here,
the synthetic generator, the oversampler) takes the names from this module.
"""

from __future__ import annotations

from typing import Sequence

MTL_ANNOTATIONS = {
    "train": "training_set_annotations.txt",
    "validation": "validation_set_annotations.txt",
}
MTL_TEST_RELEASE = "MTL_Challenge_test_set_release.txt"
MTL_IMAGES = "cropped_aligned"
MTL_TEST_HEADER = ("image", "valence", "arousal", "expression", "aus")

LSD_FOLDERS = {
    "train": "training_set_synthetic_images",
    "validation": "validation_set_real_images",
}
LSD_TEST_RELEASE = "LSD_Challenge_test_set_release.txt"
LSD_TEST_IMAGE_FOLDERS = ("test_set_images", "test_set")
"""The plausible folders of the LSD test images, in the order the reader tries them."""
LSD_TEST_IMAGES = LSD_TEST_IMAGE_FOLDERS[0]
"""Where abawbench's own trees (the generator, the oversampler) put the LSD test images."""
LSD_TEST_HEADER = ("image", "expression")

LSD_DOMAINS = {"train": "synthetic", "validation": "real"}
"""What the labelled LSD splits hold: the track trains on synthetic faces and is validated
(and tested) on real ones."""

FOLDER_ALIASES = {"ANGRER": "ANGER", "ANGERE": "ANGER"}
"""Misspelled class folders of the released LSD data (docs/abaw4.md), read as the class named."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

FINGERPRINT_VERSION = "abaw4-official/1"
"""Names these readers in every split fingerprint (and so in every cache key built on one).
Bumped when the readers return something else for the same bytes."""

RELEASE_IMAGE_FOLDERS = (MTL_IMAGES, *LSD_TEST_IMAGE_FOLDERS)
"""Folders a test release list names its images relative to."""


def release_name(sample_id: str) -> str:
    """The image name as a test release list (and so a submission file) writes it: the
    reader's sample id without the image folder the reader put in front of it."""
    for folder in RELEASE_IMAGE_FOLDERS:
        prefix = folder + "/"
        if sample_id.startswith(prefix):
            return sample_id[len(prefix):]
    return sample_id


def class_of_folder(folder: str, class_names: Sequence[str]) -> int | None:
    """Class index of an LSD folder name (case-insensitive, known misspellings accepted)."""
    upper = folder.upper()
    upper = FOLDER_ALIASES.get(upper, upper)
    lookup = {name.upper(): k for k, name in enumerate(class_names)}
    return lookup.get(upper)
