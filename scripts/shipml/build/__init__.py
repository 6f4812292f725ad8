"""``shipml build``: the serving image, built through the Docker Engine API, labelled, tagged by
rules and pushed; its digest is the stage's result. See :mod:`shipml.build.core`."""
