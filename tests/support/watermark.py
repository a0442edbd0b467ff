"""Finding a name drawn by the export watermark in a frame: template matching of the name as
Pillow draws it with the same font at the same size."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


def name_score(luma: np.ndarray, name: str, font: str, size: int) -> float:
    """Best normalised correlation of ``name`` (white on black) anywhere in ``luma``."""
    pil_font = ImageFont.truetype(font, size)
    left, top, right, bottom = (int(v) for v in pil_font.getbbox(name))
    img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), name, font=pil_font, fill=255)
    template = np.asarray(img, dtype=np.float32)
    result = cv2.matchTemplate(luma.astype(np.float32), template, cv2.TM_CCOEFF_NORMED)
    return float(cv2.minMaxLoc(result)[1])
