"""Which matrix of an AnnData holds the raw counts: `X`, or a layer named by the user.

scanpy workflows usually keep log-normalised values in `X` and the counts in `layers["counts"]`; the command line
(`--layer`), a suite (`layer = "counts"`) and `Generator.fit(..., layer=...)` name that layer, and everything
downstream sees an AnnData whose `X` is the counts. `"raw"` also names `adata.raw` (its X, with all of its genes)
when the data has no layer of that name: files from CELLxGENE and many portals keep the counts there.
"""

from __future__ import annotations

import anndata as ad
import scipy.sparse as sp

from scldbench.data.counts import check_counts
from scldbench.errors import ScldbenchError, suggest

#: how a user chooses the layer, as named in messages
CLI_CHOICE = "--layer NAME (layer = \"NAME\" in a suite, layer= in Python)"
FIT_CHOICE = "fit(..., layer=NAME)"


#: the layer name that reads `adata.raw` when the data has no layer of that name
RAW = "raw"


def _reads_raw(adata: ad.AnnData, layer: str | None) -> bool:
    return layer == RAW and RAW not in adata.layers and adata.raw is not None


def layer_names(adata: ad.AnnData) -> list[str]:
    """The layers `layer` may name: the AnnData's layers, and "raw" for `adata.raw` where it has one."""
    names = [str(name) for name in adata.layers]
    return names + [RAW] if adata.raw is not None and RAW not in names else names


def _listed(adata: ad.AnnData, names: list[str]) -> str:
    return ", ".join(f"{name} (adata.raw)" if _reads_raw(adata, name) else name for name in names)


def counts_matrix_name(layer: str | None) -> str:
    """'X' or 'layer "counts"': where the counts are read from, as messages name it."""
    return "X" if layer is None else f"layer {layer!r}"


def _matrix(adata: ad.AnnData, layer: str | None):
    if layer is None:
        return adata.X
    return adata.raw.X if _reads_raw(adata, layer) else adata.layers[layer]


def with_counts_from(adata: ad.AnnData, layer: str | None) -> ad.AnnData:
    """`adata` itself when `layer` is None; else a new AnnData whose X is that layer (same obs and var).

    Raises a one-line ScldbenchError naming the layers that exist when `layer` is not one of them.
    """
    if layer is None:
        return adata
    names = layer_names(adata)
    if layer not in names:
        if not names:
            raise ScldbenchError(
                f"layer {layer!r} is not in the data, which has no layers; leave the layer out to read counts from X"
            )
        raise ScldbenchError(
            f"layer {layer!r} is not in the data{suggest(layer, names)}; its layers: {_listed(adata, names)}"
        )
    x = _matrix(adata, layer)
    if sp.issparse(x) and not isinstance(x, sp.csr_matrix):
        x = sp.csr_matrix(x)
    var = adata.raw.var if _reads_raw(adata, layer) else adata.var  # adata.raw may hold more genes than X
    return ad.AnnData(X=x, obs=adata.obs.copy(), var=var.copy())


def counts_advice(adata: ad.AnnData, layer: str | None, choice: str) -> str:
    """How to fix a matrix that is not raw counts: the other layers of `adata` and how to choose one (`choice`)."""
    others = [name for name in layer_names(adata) if name != layer]
    if others:
        return f"choose the layer holding raw counts with {choice}; layers in the data: {_listed(adata, others)}"
    place = "X" if layer is not None else "X or a layer"
    return f"the data has no {'other ' if layer is not None else ''}layers: pass raw counts in {place} ({choice})"


def check_counts_in(adata: ad.AnnData, layer: str | None, what: str, choice: str) -> None:
    """Refuse `adata`'s X (or `layer`) unless it holds raw counts; the message names the layers to choose from."""
    x = _matrix(adata, layer)
    if x is None:
        raise ScldbenchError(f"{what} has no X; {counts_advice(adata, layer, choice)}")
    check_counts(x, f"{what} ({counts_matrix_name(layer)})", advice=counts_advice(adata, layer, choice))
