"""`bbuvl data ...`: synthesise, convert, check, summarise, split and pick teachers."""

from __future__ import annotations

import typer

from bbuvl.cli import data_convert, data_synth, data_tools
from bbuvl.cli.common import command_group

app = command_group(help="Build, convert and check datasets.", no_args_is_help=True)

app.command("synth")(data_synth.synth)
app.command("convert")(data_convert.convert)
app.command("check")(data_tools.check)
app.command("stats")(data_tools.stats)
app.command("teachers")(data_tools.teachers)
app.command("split")(data_tools.split)
app.command("tile")(data_tools.tile)
app.command("import-coco")(data_tools.import_coco)
app.command("export-coco")(data_tools.export_coco)
