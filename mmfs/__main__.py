import sys

from mmfs.cli import main

sys.exit(main())
