"""SIB-200, the study's dataset: its seven topics and where it lives.

The release layout is ``<root>/<lang>/{train,dev,test}.tsv`` with the columns ``index_id``,
``category`` and ``text`` (CSV-quoted, tab-separated); the Hub dataset ``Davlan/sib200`` has
one config per language and the splits ``train``, ``validation`` and ``test``. Both are read by
:class:`~xlspt.data.task.TaskData` like any other labelled data; data in SIB-200's own format
keeps these seven classes in this order and refuses any other category.
"""

#: The seven SIB-200 topics, in the order the study's label words are listed.
CATEGORIES: tuple[str, ...] = (
    "geography",
    "science/technology",
    "entertainment",
    "politics",
    "health",
    "travel",
    "sports",
)
