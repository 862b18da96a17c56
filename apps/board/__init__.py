"""A live message board: an example of a complete service built only on
corofw (see :mod:`apps.board.app`)."""
