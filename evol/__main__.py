from evol.cli.main import main

raise SystemExit(main())
