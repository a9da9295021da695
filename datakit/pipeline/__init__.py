"""Streaming pipelines: recipes of steps over Arrow record batches, run in shards that survive crashes.

```python
from datakit.pipeline import run
result = run("pipelines/demo.yaml", ["seed=1"])
print(result.output())
```

Write your own steps by deriving from `SourceStep`, `MapStep`, `GlobalStep` or `SinkStep` and either
registering them (`@register("name")`) or naming them in a recipe as `uses: package.module:Class`.
"""

from __future__ import annotations

from datakit.pipeline.params import param
from datakit.pipeline.recipe import Recipe, load_recipe
from datakit.pipeline.registry import available, lookup, register
from datakit.pipeline.runner import RunResult, run
from datakit.pipeline.step import (
    GlobalStep,
    Index,
    MapResult,
    MapStep,
    SinkStep,
    SourceStep,
    Step,
    StepContext,
    TransientError,
    shared,
)

__all__ = [
    "GlobalStep",
    "Index",
    "MapResult",
    "MapStep",
    "Recipe",
    "RunResult",
    "SinkStep",
    "SourceStep",
    "Step",
    "StepContext",
    "TransientError",
    "available",
    "load_recipe",
    "lookup",
    "param",
    "register",
    "run",
    "shared",
]
