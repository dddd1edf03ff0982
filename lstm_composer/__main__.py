"""``python -m lstm_composer``: the console script, as ``lstm-composer``."""

import sys

from lstm_composer import main

sys.exit(main())
