"""The operator's documents made from the declarations the programs run on.

* ``model.py`` reads an argparse parser (``ecrd.cli.parser``, ``ecrd.ctl.parser``) into
  commands, options and arguments: the same help texts, defaults and choices ``--help``
  shows;
* ``config_doc.py`` reads the annotated example config (``etc/ecrd.toml``: each key's
  comment) with the defaults and the keys of ``ecrd/config.py``;
* ``man.py`` writes the man pages ``ecrd(8)``, ``ecrctl(1)`` and ``ecrd.toml(5)`` from them
  (``roff.py``: the markup), ``completion.py`` the bash and zsh completions.

``python -m ecrd.docgen OUTDIR`` writes them all; ``scripts/build-deb`` runs it, so the
package's pages can never disagree with ``--help`` or with what ``check-config`` accepts.
"""
