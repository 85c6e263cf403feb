"""`python -m dataplatform.cli` = `dp`."""

from dataplatform.cli import main

main()
