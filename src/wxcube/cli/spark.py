"""`wxcube spark-rollup` (SPEC §7). pyspark is imported lazily, only by the command."""

from __future__ import annotations

import click

from . import fail, visit_input_options


@click.command("spark-rollup")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="PATH",
    help="Visit logs: files, directories or globs, local or any storage Spark reads "
    "(s3a://, gs://, abfss://, hdfs://). Repeat, or list more PATHs after the options.",
)
@visit_input_options("--timezone")
@click.option("--app", "appid", required=True, help="APPID the roll-up is for.")
@click.option(
    "--timezone",
    required=True,
    help="The app's timezone (local days are counted in it), e.g. Asia/Shanghai.",
)
@click.option("--output", required=True, help="Roll-up directory to write (local or a URL).")
@click.option(
    "--master",
    help="Spark master (default: local[*], or what spark-submit set), e.g. local[2], yarn.",
)
@click.option(
    "--max-bad",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Bad rows to tolerate (skipped and reported); more fails the job.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing roll-up in --output.")
@click.option("--shuffle-partitions", type=click.IntRange(min=1), help="Spark shuffle partitions.")
def spark_rollup(
    paths: tuple[str, ...],
    inputs: tuple[str, ...],
    fmt_: str | None,
    openid_col: str,
    time_col: str,
    naive_tz: str | None,
    appid: str,
    timezone: str,
    output: str,
    master: str | None,
    max_bad: int,
    overwrite: bool,
    shuffle_partitions: int | None,
) -> None:
    """Roll raw visit logs up into (openid, local day) pairs with Apache Spark.

    Same timestamp rules and validation as `wxcube ingest`; writes Parquet under
    OUTPUT/day=YYYY-MM-DD/ and, last, OUTPUT/manifest.json. Load it with
    `wxcube ingest --rollup OUTPUT --app APPID`. Needs pyspark (pip install 'wxcube[spark]')
    and Java 17+. On a cluster run `spark-submit .../wxcube/spark.py` with the same options.
    """
    from .. import spark

    cfg = spark.RollupConfig(
        inputs=inputs + paths,
        app=appid,
        timezone=timezone,
        output=output,
        fmt=fmt_,
        openid_col=openid_col,
        time_col=time_col,
        naive_tz=naive_tz,
        master=master,
        max_bad=max_bad,
        overwrite=overwrite,
        shuffle_partitions=shuffle_partitions,
    )
    try:
        result = spark.run(cfg)
    except spark.RollupError as e:
        fail(str(e))
        return
    for ex in result.examples:
        click.echo(f"warning: bad row skipped: {ex}", err=True)
    click.echo(spark.summary(result))
    click.echo(f"load it with: wxcube ingest --rollup {output} --app {appid}")


COMMANDS: list[click.Command] = [spark_rollup]
