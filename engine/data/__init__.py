"""Data sets for the training engine: sources, intake, checking, split, transforms and loaders.

Every source ends as a folder of class folders holding image files (`<root>/<class>/<file>`, or
`<root>/train/<class>/…` and `<root>/valid/<class>/…`), so cleaning and relabelling work the same
for all of them. Sources: scikit-learn's digits (offline default), Oxford-IIIT Pet, a zip, an
existing folder, and URL lists (`download_images`, from engine.download).

    errors.py      DataError
    files.py       which files are images, junk to skip, Progress, building a folder atomically
    config.py      DataConfig and the ImageNet mean/std
    sources.py     digits_folder, pets_folder (with its download)
    safezip.py     extract_zip and its checks
    verify.py      verify_images and the quarantine
    items.py       Items, load_items, split_items (the seeded split)
    transforms.py  resize_crop, BatchAugment, train/valid transforms, denormalize
    loaders.py     DecodeCache, decode_items, DataLoaders, build_dataloaders
    grids.py       grid_image, show_batch

Every name is re-exported here, so `from engine.data import X` works for all of them. To replace
a function in a test, patch it in the module that uses it (e.g. `engine.data.loaders.load_image`).
"""
from __future__ import annotations

# URL lists and image decoding live in their own engine modules; engine.data has always offered
# them.
from engine.download import (DownloadReport, class_name_from_url_file, download_images,
                             read_url_file)
from engine.images import ImageError, load_image
from engine.paths import data_dir

from engine.data.config import IMAGENET_MEAN, IMAGENET_STD, DataConfig
from engine.data.errors import DataError
from engine.data.files import IMAGE_SUFFIXES, VALID_NAMES, Progress
from engine.data.grids import grid_image, show_batch
from engine.data.items import Items, load_items, split_items
from engine.data.loaders import (DECODE_CACHE, BatchCollate, CachedImages, DataLoaders, DecodeCache,
                                 build_dataloaders, decode_items)
from engine.data.safezip import extract_zip
from engine.data.sources import (PETS_DOWNLOAD_BYTES, PETS_FILES, PETS_LABELS, digits_folder,
                                 pets_download_size, pets_folder)
from engine.data.transforms import (BatchAugment, batch_augment, denormalize, resize_crop,
                                    train_transforms, valid_transforms)
from engine.data.verify import verify_images

__all__ = [
    # errors, files, config
    "DataError", "IMAGE_SUFFIXES", "VALID_NAMES", "Progress", "IMAGENET_MEAN", "IMAGENET_STD",
    "DataConfig",
    # sources
    "digits_folder", "pets_folder", "pets_download_size", "PETS_FILES", "PETS_DOWNLOAD_BYTES",
    "PETS_LABELS", "download_images", "read_url_file", "class_name_from_url_file", "DownloadReport",
    # intake and checking
    "extract_zip", "verify_images",
    # items and split
    "Items", "load_items", "split_items",
    # transforms
    "resize_crop", "BatchAugment", "batch_augment", "train_transforms", "valid_transforms",
    "denormalize",
    # loaders
    "DecodeCache", "DECODE_CACHE", "decode_items", "CachedImages", "BatchCollate", "DataLoaders",
    "build_dataloaders",
    # grids
    "grid_image", "show_batch",
    # from engine.images and engine.paths
    "ImageError", "load_image", "data_dir",
]
