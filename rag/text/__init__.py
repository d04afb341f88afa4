"""Text toolkit: the bottom layer of ``rag``, shared by chunking, evidence, attribution, the
question guard and the evaluation. It imports nothing else from ``rag``.

* ``sentences``  Dutch sentence splitting (abbreviations, initials, list numbering);
* ``tokens``     content words: lower case, Dutch stop words out, Snowball-stemmed;
* ``numbers``    numbers in text, normalised ("1.000" -> "1000"), number words, scaled amounts;
* ``markers``    the ``[n]`` citation markers of an answer;
* ``idf``        term weights (uniform, BM25).

The package itself imports none of them, so that a module needing only sentences does not
load the stemmer.
"""
