from idm.cli import main

main()
