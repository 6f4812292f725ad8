"""``shipml monitor``: drift of production inputs and predictions against the reference data.

It reads the prediction log of ``shipml serve`` (or a table of production rows), runs deepchecks'
drift checks with validate's condition syntax plus checks of columns, null rates, out-of-range
values, volume and (with late labels) performance, writes the stage result, an HTML page and
JUnit, and tells the team: one GitHub issue per model key and an optional ``repository_dispatch``.
"""
