"""A small set of real photographs for super-resolution, from a package: the sample images
that scikit-image ships inside its wheel (skimage/data; public domain or freely licensed,
see its README.txt there). Nothing is downloaded: `pip install scikit-image` (the `photos`
extra) puts them on disk, and this module copies them into two folders:

    python -m ganforge.data.photos data/photos     # or: make photos

    data/photos/train   9 photographs: astronaut, brick, coins, grass, gravel, ihc, moon,
                        and the two motorcycle views (SRGAN trains on 96x96 crops of them)
    data/photos/test    4 held out: camera, chelsea, coffee, rocket (`ganforge evaluate`)

Left out: the synthetic images (chessboards, logo, phantom, ...), the text scans, and the
microscope, retina and Hubble images, whose large dark areas would outweigh the rest.
"""
import argparse
import os
import shutil

TRAIN = ("astronaut.png", "brick.png", "coins.png", "grass.png", "gravel.png", "ihc.png", "moon.png",
         "motorcycle_left.png", "motorcycle_right.png")
TEST = ("camera.png", "chelsea.png", "coffee.png", "rocket.jpg")


def scikit_image_data():
    """The folder of scikit-image's bundled sample images."""
    try:
        import skimage
    except ImportError:
        raise ImportError("the photographs come from scikit-image's package: pip install scikit-image "
                          "(or ganforge[photos])") from None
    return os.path.join(os.path.dirname(skimage.__file__), "data")


def install_photos(out):
    """Copy the photographs into out/train and out/test; returns the two folders."""
    source = scikit_image_data()
    folders = {}
    for split, names in (("train", TRAIN), ("test", TEST)):
        folders[split] = folder = os.path.join(out, split)
        os.makedirs(folder, exist_ok=True)
        for name in names:
            path = os.path.join(source, name)
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path} is missing from this scikit-image; reinstall it "
                                        "(pip install --force-reinstall scikit-image)")
            shutil.copyfile(path, os.path.join(folder, name))
    return folders["train"], folders["test"]


def main():
    parser = argparse.ArgumentParser(description="copy scikit-image's sample photographs into OUT/train and OUT/test")
    parser.add_argument("out", nargs="?", default="data/photos")
    train, test = install_photos(parser.parse_args().out)
    print(f"photos: {len(TRAIN)} in {train}, {len(TEST)} held out in {test}")


if __name__ == "__main__":
    main()
