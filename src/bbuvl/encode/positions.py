"""mRoPE position ids for the Qwen VL families (data/families.py), computed from the real `image_grid_thw`.

Text tokens advance all three axes (temporal, height, width) together; an image block of
`t x h x w` merged patches gets its grid coordinates offset by the position where it starts, and the text
after it resumes at start + max(h, w). This mirrors each family's `get_rope_index` (a test checks they
agree) but needs no model instance and no `mm_token_type_ids`, whose handling differs between
transformers releases.
"""

from __future__ import annotations

import torch


def mrope_positions(input_ids: torch.Tensor, image_grid_thw: torch.Tensor, image_token_id: int, merge: int = 2) -> torch.Tensor:
    """Position ids `[3, L]` for one unpadded sequence `input_ids` `[L]` holding `len(image_grid_thw)` images."""
    L = input_ids.shape[0]
    is_image = (input_ids == image_token_id).tolist()
    out = torch.empty(3, L, dtype=torch.long)
    grids = iter(image_grid_thw.tolist())
    pos, i = 0, 0
    while i < L:
        if not is_image[i]:
            j = i
            while j < L and not is_image[j]:
                j += 1
            out[:, i:j] = torch.arange(pos, pos + j - i)
            pos += j - i
            i = j
            continue
        t, h, w = next(grids)
        h, w = h // merge, w // merge
        n = t * h * w
        tt = torch.arange(t).view(t, 1, 1).expand(t, h, w).reshape(-1)
        hh = torch.arange(h).view(1, h, 1).expand(t, h, w).reshape(-1)
        ww = torch.arange(w).view(1, 1, w).expand(t, h, w).reshape(-1)
        if i + n > L or not all(is_image[i : i + n]):
            raise ValueError(f"image block at token {i} is shorter than its grid {t}x{h}x{w} says")
        out[:, i : i + n] = torch.stack([tt, hh, ww]) + pos
        pos += max(h, w)
        i += n
    if next(grids, None) is not None:
        raise ValueError("more image grids than image blocks in the sequence")
    return out
