"""The paper-scale runs: LP, FT and LP-FT on the paper's image datasets and pretrained networks, on a GPU or a CPU.

Built on the core (:mod:`lpft`); knows no repository path. Its extra dependencies: ``pip install "lpft[scale]"``.
"""
