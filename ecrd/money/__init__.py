"""The money rules (design.md §3): who may pay, and what settles a payment, on proof alone.

* ``request.py``     a money command as a value (what rule 2 compares, what goes on the wire)
* ``admission.py``   whether it may start (rules 2, 4, 5): a pure function
* ``refunds.py``     whether a refund or void is backed by the journal: a pure function
* ``evidence.py``    what ecrd learns about a payment, and what an answer proves
* ``settlement.py``  the one authority: ``settle(record, evidence) -> Change``, pure
* ``authority.py``   runs ``settle`` in the journal's write transaction, says what changed,
                     keeps evidence whose write failed and writes it again
* ``asking.py``      the status action: the terminal asked about an unknown payment
* ``payments.py``    the rules run: admission, write ahead, one exchange, its evidence
"""
