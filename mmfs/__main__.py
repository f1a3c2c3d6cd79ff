import sys

from mmfs.commands.main import main

sys.exit(main())
