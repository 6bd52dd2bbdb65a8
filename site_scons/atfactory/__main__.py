"""python -m atfactory: the same as the ``atfactory`` command."""
import sys

from .cli import main

sys.exit(main())
