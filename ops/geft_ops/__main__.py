import sys

from geft_ops.cli import main

sys.exit(main())
