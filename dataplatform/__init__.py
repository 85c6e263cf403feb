"""The ML data platform. From Python: `import dataplatform as dp; lake = dp.connect()`
(dataplatform/api.py). Jobs import the package too (its zip is their library), so nothing
heavy is imported here."""


def connect(*args, **kwargs):
    """See dataplatform.api.connect."""
    from dataplatform.api import connect as _connect

    return _connect(*args, **kwargs)
