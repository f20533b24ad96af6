from glode.cli import main

raise SystemExit(main())
