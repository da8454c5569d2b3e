import sys

from atenea.cli.main import main

sys.exit(main())
