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

#: What files written for others (sidecars, model cards) call a local copy in the release layout: the dataset,
#: never the folder it sits in. The release carries no version number; the checksum of the rows read, recorded
#: beside this name, pins which copy it was.
RELEASE = "SIB-200 (release layout)"
#: The Hub dataset of the same data, one config per language.
HUB_DATASET = "Davlan/sib200"
#: The licence of SIB-200's texts (FLORES-200's sentences) and labels.
LICENCE = "CC BY-SA 4.0"
