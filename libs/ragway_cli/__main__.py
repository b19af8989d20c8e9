from ragway_cli.main import main

main()
