import sys

from sansnuages.tools.cli import main

sys.exit(main())
