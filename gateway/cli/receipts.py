"""Where a dispatch is: per recipient, each status with time and author, the hub receipt, overdue flags."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gateway.calendar import vn_display
from gateway.cli.node import ConfigOption, JsonOption, with_node

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    invoke_without_command=True,
    context_settings={"allow_interspersed_args": True},  # `gateway receipts ID --json`: options after the id
)
console = Console()

LABELS = {
    "01": "đã đến",
    "02": "từ chối",
    "03": "đã tiếp nhận",
    "04": "phân công",
    "05": "đang xử lý",
    "06": "hoàn thành",
    "13": "yêu cầu lấy lại",
    "15": "đồng ý",
    "16": "không đồng ý",
}


def render(data: dict[str, Any]) -> None:
    console.print(
        f"[bold]{data['document_id']}[/] ({data['role']}; package {data['package_id'][:16]}…)",
        highlight=False,
    )
    receipt = data.get("hub_receipt")
    if receipt:
        console.print(
            f"hub receipt: {receipt['hub']} at {vn_display(receipt['hub_time'])} ICT, "
            f"SHA-256 {receipt['sha256'][:16]}…, "
            f"{receipt['size']} bytes, {receipt['carriage']}, verdict {receipt['verdict']} "
            f"(signature {receipt['signature']})",
            highlight=False,
        )
    if data.get("source") == "local":
        console.print(f"[yellow]hub unreachable[/] ({data.get('hub_error')}): from the node's store only")
    table = Table("recipient", "state", "overdue", "deadline (ICT)", "status", "at (ICT)", "by", "note")
    for r in data["recipients"]:
        events = r["events"] or [{"code": "", "at": "", "by": "", "description": ""}]
        for i, e in enumerate(events):
            first = i == 0
            table.add_row(
                r["organ_id"] if first else "",
                r["state"] if first else "",
                ("[red]overdue[/]" if r["overdue"] else "no") if first else "",
                vn_display(r["deadline"]) if first else "",
                f"{e['code']} {LABELS.get(e['code'], '')}".strip(),
                vn_display(e["at"]),
                e["by"] or "",
                e.get("description") or "",
            )
    console.print(table)
    for s in data.get("my_statuses", []):
        console.print(
            f"sent by this node: {s['code']} ({s['state']}) at {vn_display(s['at'])} ICT", highlight=False
        )


@app.callback(invoke_without_command=True)
def receipts(
    document_id: Annotated[str, typer.Argument(help="DocumentId (OrganId,yyyy/MM/dd,Number/Notation).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show every recipient's statuses for a dispatch (from the hub's timeline and the node's store)."""
    data = with_node(config, lambda node: node.receipts(document_id))
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        render(data)
