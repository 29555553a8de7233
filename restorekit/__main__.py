from restorekit.cli import entry

entry()
