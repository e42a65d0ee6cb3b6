"""Kernel Playground: what a 3×3 kernel does to a photo, one pixel at a time, in layers, and learned.

Thin page: widgets return plain values (ui/kernels_controls.py), engine.kernels computes,
ui/kernels_sections.py draws with the figures of ui/kernels_figs.py.
"""
from __future__ import annotations

import streamlit as st

from engine import kernels
from ui import kernels_controls as controls
from ui import kernels_sections as sections
from ui import state, urlstate
from ui.kernels_tensor import tensor_section
from ui.nav import ensure_app_navigation


def main() -> None:
    st.title("Kernel Playground")
    st.caption("A photo is a grid of numbers: height × width × 3 colour channels, each 0–255. A 3×3 "
               "kernel is nine weights. For every pixel, lay the kernel over the pixel and its eight "
               "neighbours, multiply each pair of numbers and add the nine products: "
               "out[y, x] = Σᵢ Σⱼ k[i, j] · img[y+i−1, x+j−1]. Like a CNN layer, the kernel is not "
               "flipped (strictly, this is cross-correlation).")
    controls.init_state()
    left, right = st.columns([1, 2.2], gap="large")
    with left:
        image, name = controls.image_source()
        st.subheader("Kernel")
        kernel, kernel_error = controls.kernel_editor()
        if kernel_error:
            st.error(kernel_error)
        grey, mode, relu, border, side = controls.output_options()
    photo_key = controls.photo_key(image, name)
    work = controls.working_copy(photo_key, image, side, grey)
    image_key = photo_key + f":{side}:{grey}"
    response = kernels.apply_kernel(work, kernel, border=border, relu=relu)
    with right:
        h, w = work.shape[:2]
        size_note = f"working at {w}×{h}" + (
            f" (photo is {image.shape[1]}×{image.shape[0]})" if work.shape[:2] != image.shape[:2] else "")
        a, b = st.columns(2)
        with a:
            sections.show(work, f"input — {name}, {size_note}", cache_key=image_key)
        with b:
            img, note = sections.render(response, mode)
            sections.show(img, f"output — {note}")
        lo, hi = float(response.min()), float(response.max())
        st.caption(f"The raw response runs from {lo:.4g} to {hi:.4g}: negative where the "
                   "kernel's negative weights meet bright pixels. A picture needs 0–255, so choose "
                   "how to show it.")
    tabs = right.tabs(["Pixel walkthrough", "Photo as numbers", "Borders", "Layers",
                       "Learn the kernel", "Share"])
    with tabs[0]:
        sections.pixel_walkthrough(work, kernel, border, response)
    with tabs[1]:   # after the walkthrough, which settles the pixel the crop starts at
        tensor_section(image, controls.working_copy(photo_key, image, side, False), work)
    with tabs[2]:
        sections.border_comparison(work, kernel, relu)
    with tabs[3]:
        sections.layers_section(image_key, work, kernel, border, mode)
    with tabs[4]:
        sections.learn_section(image_key, work, kernel, border)
    state.remember(controls.widget_keys())
    query = urlstate.sync(controls.PAGE)
    with tabs[5]:
        sections.share(query)


ensure_app_navigation()
main()
