"""docs/protocols.md, generated from the protocol declarations and the metric catalogue.

Regenerate after changing either: `python -m scldbench.protocols_page > docs/protocols.md` (a test checks the
page is current).
"""

from __future__ import annotations

import json

from scldbench.metrics.catalogue import METRICS
from scldbench.protocols import DEFAULT_PROTOCOLS, EXTRAS_PROTOCOL, PROTOCOLS

INTRO = f"""# Evaluation protocols and metrics

Published scores for single-cell generators are rarely comparable: each paper normalises, reduces and
scales differently. scldbench names its protocols, pins their settings and versions them; every score in a
job record sits under the protocol that made it, with that protocol's description and settings beside it.

## One sample, every protocol

Each job (dataset, generator, parameters, seed) fits its generator once and samples it once. A conditional
generator is asked for exactly as many cells of each cluster as the real test set holds; an unconditional
one for as many cells as the real test set. The sample is stored (`samples/<job_id>.h5ad`) and every
protocol the suite names scores it:

```toml
protocols = ["scgan-v1", "hvg-pca30-v1"]   # the default; the older protocol = "scgan-v1" still works
```

A job's key covers what makes the sample (data, generator, parameters, seed, sampling settings), not the
protocols: adding a protocol to a suite and running it again scores the stored samples without refitting.
The record keeps one entry per protocol:

```
record["scores"]["hvg-pca30-v1"] = {{"description": ..., "settings": {{...}}, "metrics": {{...}},
                                    "per_cluster": {{"<cluster>": {{...}}}}, "status": "ok", "error": null}}
```

Default protocols: {", ".join(f"`{p}`" for p in DEFAULT_PROTOCOLS)}.

Scores that do not depend on a protocol are computed once per sample. The biology-level metrics (DE
recovery, gene-gene correlation, each with its real-vs-real reference) are recorded under every protocol,
so that each leaderboard shows them. The other protocol-independent scores (manifold precision / recall /
density / coverage, data properties, memorisation, train-synthetic-test-real, augmentation) are recorded
once, under `{EXTRAS_PROTOCOL}` when the suite runs it (else under its first protocol): they live in spaces
of their own, and showing them on two boards would count them twice.

Every metric below is declared once, in `scldbench/metrics/catalogue.py`, with its direction, space and
formula; scoring, ranking and the reports read that declaration.
"""


def _protocol_section(name: str) -> str:
    protocol = PROTOCOLS[name]
    settings = json.dumps(dict(protocol.settings), separators=(", ", ": "))
    own = [m for m in METRICS if m.space == protocol.space]
    lines = [f"## `{name}` (version {protocol.version})", "", protocol.description + ".", "",
             f"Settings recorded with every score: `{settings}`, plus the suite's "
             f"{', '.join(f'`{k}`' for k in protocol.scoring_keys)}.", ""]
    if own:
        lines.append("Metrics of its own space: " + ", ".join(f"`{m.name}`" for m in own) + ".")
        lines.append("")
    return "\n".join(lines)


def _metric_table() -> str:
    lines = ["## Metrics", "", "| metric | label | space | direction | formula |", "|---|---|---|---|---|"]
    for m in METRICS:
        rule = m.rule() + (f"; read with `{m.partner}`" if m.partner else "")
        formula = m.formula.replace("|", "\\|")
        lines.append(f"| `{m.name}` | {m.label} | {m.space} | {rule} | {formula} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    """The page's Markdown."""
    parts = [INTRO] + [_protocol_section(name) for name in PROTOCOLS] + [_metric_table()]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
