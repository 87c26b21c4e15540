"""``python -m rlexp.report SWEEP_DIR [--target RETURN] [--no-plots]``."""

import sys

from rlexp.report.sweep import main
from rlexp.runtime import skip_exit_collection

skip_exit_collection()
sys.exit(main())
