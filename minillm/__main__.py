from minillm.app.cli import main

raise SystemExit(main())
