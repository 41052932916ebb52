"""Scale-out: the pipeline stages as Dramatiq tasks over a broker, PostgreSQL as the shared store (docs/scaling.md).

`newsdigest run` never imports this package; `newsdigest worker` and `newsdigest scheduler` do.
"""
