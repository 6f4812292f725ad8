"""Imported first in the process deepchecks workers fork from: keep deepchecks' import quiet.

deepchecks warns on import (pkg_resources, plotly); the main process hides those warnings where
it imports deepchecks, and the workers' process must not print them either.
"""

import warnings

warnings.simplefilter("ignore")
