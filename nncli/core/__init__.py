"""Core: errors and exit codes, the stderr console, run directories, reports and gates. Depends on nothing else in nncli."""
