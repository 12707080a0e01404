import sys

from r2cnn.cli import main

sys.exit(main())
