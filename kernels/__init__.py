"""The Triton kernels of ``stc_attention``, installed as ``stcformer.kernels``.

The folder sits at the top of the checkout, beside ``csrc/`` (the C++ and CUDA kernels), as the
project's layout puts every kernel source there; ``setup.py`` installs it into the package with
``package_dir={"stcformer.kernels": "kernels"}``. The kernels are part of the ops layer: their
only caller is the launcher ``stcformer.ops.backends.triton``, they import each other by their
absolute ``stcformer.kernels`` names and nothing else of the package (tests/test_layout.py).

``common`` (qkv layout strides, the 3x3 depthwise convolution read from global memory),
``spatial`` (attention over the joints of each frame), ``temporal`` (attention over the frames
of each joint, flash-style), ``conv`` (the gradients of the convolution and spe of both halves).
"""
