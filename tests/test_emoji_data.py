"""prepare-emoji-data: captions from an emoji's label and keywords (the npm packages themselves
are not needed for this: a two-emoji stand-in of their files)."""
import json

from PIL import Image

from promptgan.models.data import emoji_npm
from promptgan.models.data.folder import load_image_folder


def test_folder_from_npm_layout(tmp_path):
    npm = tmp_path / "node_modules"
    imgs = npm / "emoji-datasource-google" / "img" / "google" / "64"
    imgs.mkdir(parents=True)
    (npm / "emojibase-data" / "en").mkdir(parents=True)
    for code in ("1f33b", "1f600"):
        Image.new("RGBA", (64, 64), (250, 200, 0, 255)).save(imgs / f"{code}.png")
    (npm / "emoji-datasource-google" / "emoji.json").write_text(json.dumps([
        {"name": "SUNFLOWER", "short_name": "sunflower", "unified": "1F33B", "image": "1f33b.png",
         "has_img_google": True},
        {"name": "GRINNING FACE", "short_name": "grinning", "unified": "1F600", "image": "1f600.png",
         "has_img_google": False}]))
    (npm / "emojibase-data" / "en" / "data.json").write_text(json.dumps([
        {"hexcode": "1F33B", "label": "sunflower",
         "tags": ["flower", "outdoors", "plant", "sun", "yellow"]}]))
    out = tmp_path / "folder"
    assert emoji_npm.main(["--npm", str(npm), "--out", str(out)]) == 0
    assert (out / "1f33b.txt").read_text().splitlines() == [
        "an emoji of sunflower", "sunflower", "sunflower emoji", "sunflower, outdoors, plant, yellow"]
    assert not (out / "1f600.png").exists() and "Apache" in (out / "LICENSES.txt").read_text()
    found = load_image_folder(out, 32)
    assert found["images"].shape == (1, 32, 32, 3) and found["captions"][0][0] == "an emoji of sunflower"
