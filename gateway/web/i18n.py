"""Labels of the web pages in Vietnamese (the default) and English.

Status codes, levels and rate buckets carry their own labels in the pure core
(:class:`gateway.edxml.codes.StatusCode`, :class:`~gateway.edxml.codes.Level`, :class:`gateway.rate.Bucket`);
this table holds the rest: page titles, column headers, messages. A missing key is a bug, so
:func:`translate` raises instead of showing the key to a user.
"""

from __future__ import annotations

from typing import Final, Literal

from gateway.edxml.codes import StatusCode

Lang = Literal["vi", "en"]
LANGS: Final[tuple[Lang, ...]] = ("vi", "en")

_TEXT: Final[dict[str, tuple[str, str]]] = {
    "site": ("Trục liên thông văn bản tỉnh (LGSP)", "Provincial document exchange hub (LGSP)"),
    "sign_in": ("Đăng nhập", "Sign in"),
    "sign_out": ("Đăng xuất", "Sign out"),
    "username": ("Tên đăng nhập", "Username"),
    "password": ("Mật khẩu", "Password"),
    "login_failed": (
        "Sai tên đăng nhập hoặc mật khẩu, hoặc tài khoản đang tạm khóa. Vui lòng thử lại sau.",
        "Wrong username or password, or the account is temporarily locked. Please try again later.",
    ),
    "login_throttled": (
        "Quá nhiều lần đăng nhập sai. Vui lòng thử lại sau ít phút.",
        "Too many failed sign-ins. Please try again in a few minutes.",
    ),
    "role_clerk": ("Văn thư", "Clerk"),
    "role_auditor": ("Kiểm tra, giám sát", "Auditor"),
    "role_admin": ("Quản trị", "Administrator"),
    "nav_dispatches": ("Văn bản", "Dispatches"),
    "nav_overdue": ("Quá hạn", "Overdue"),
    "nav_rate": ("Tỷ lệ văn bản điện tử", "Electronic-exchange rate"),
    "nav_users": ("Người dùng", "Users"),
    "dispatches_title": ("Văn bản đi và đến", "Dispatches sent and received"),
    "all_agencies": ("Tất cả cơ quan", "All agencies"),
    "direction": ("Chiều", "Direction"),
    "dir_all": ("Tất cả", "All"),
    "dir_sent": ("Văn bản đi", "Sent"),
    "dir_received": ("Văn bản đến", "Received"),
    "number": ("Số, ký hiệu", "Number"),
    "subject": ("Trích yếu", "Subject"),
    "date_from": ("Từ ngày", "From"),
    "date_to": ("Đến ngày", "To"),
    "search": ("Tìm kiếm", "Search"),
    "apply": ("Áp dụng", "Apply"),
    "received_at": ("Thời điểm trục nhận", "Received by the hub"),
    "promulgation_date": ("Ngày ban hành", "Date"),
    "sender": ("Cơ quan gửi", "Sender"),
    "recipient": ("Cơ quan nhận", "Recipient"),
    "recipients": ("Nơi nhận", "Recipients"),
    "confirmed": ("Đã xác nhận", "Confirmed"),
    "state": ("Trạng thái", "State"),
    "type": ("Loại", "Type"),
    "no_results": ("Không có văn bản nào.", "Nothing found."),
    "results": ("kết quả", "results"),
    "previous": ("Trang trước", "Previous"),
    "next": ("Trang sau", "Next"),
    "dispatch": ("Văn bản", "Dispatch"),
    "document_id": ("Mã văn bản (DocumentId)", "DocumentId"),
    "document_type": ("Loại văn bản", "Document type"),
    "priority": ("Độ khẩn", "Priority"),
    "paper": ("Gửi kèm bản giấy", "Paper copy sent"),
    "yes": ("Có", "Yes"),
    "no": ("Không", "No"),
    "form": ("Hình thức gói tin", "Carriage form"),
    "size": ("Dung lượng", "Size"),
    "signature": ("Chữ ký số", "Signature"),
    "signature_valid": ("Hợp lệ", "Valid"),
    "attachments": ("Tệp đính kèm", "Attachments"),
    "downloads": ("Tải về", "Downloads"),
    "download_package": ("Gói tin edXML", "edXML package"),
    "download_verdict": ("Kết quả kiểm tra (JSON)", "Verdict (JSON)"),
    "download_receipt": ("Biên nhận của trục (XML)", "Hub receipt (XML)"),
    "package_withheld": (
        "Tài khoản kiểm tra, giám sát xem được số liệu và thông tin văn bản, "
        "không tải được nội dung gói tin.",
        "Auditor accounts see figures and metadata, not the package contents.",
    ),
    "timeline": ("Diễn biến xử lý theo nơi nhận", "Timeline per recipient"),
    "deadline": ("Hạn xác nhận đã đến", "Deadline for arrival"),
    "overdue": ("Quá hạn", "Overdue"),
    "on_time": ("Đúng hạn", "On time"),
    "waiting": ("Đang chờ", "Waiting"),
    "code": ("Mã", "Code"),
    "time": ("Thời điểm", "Time"),
    "by": ("Bên gửi trạng thái", "From"),
    "description": ("Ghi chú", "Note"),
    "outcome": ("Kết quả", "Outcome"),
    "no_events": ("Chưa có trạng thái nào.", "No status yet."),
    "targets": ("Văn bản được thu hồi/cập nhật/thay thế", "Document recalled/updated/replaced"),
    "overdue_title": ("Văn bản quá hạn xác nhận", "Overdue confirmations"),
    "overdue_sent": (
        "Văn bản đi: nơi nhận chưa xác nhận đã đến quá hạn",
        "Sent: recipients that have not confirmed arrival in time",
    ),
    "overdue_received": (
        "Văn bản đến: cơ quan mình chưa xác nhận đã đến quá hạn",
        "Received: not yet confirmed by us, past the deadline",
    ),
    "overdue_rule": (
        "Hạn: hết ngày làm việc tiếp theo sau khi trục nhận văn bản (Nghị định 30/2020/NĐ-CP, Điều 21).",
        "Deadline: the end of the next working day after the hub received the document (Decree 30/2020).",
    ),
    "rate_title": (
        "Tỷ lệ văn bản được trao đổi hoàn toàn dưới dạng điện tử",
        "Share of fully electronic exchanges",
    ),
    "rate_formula": (
        "Tỷ lệ = số hoàn toàn điện tử ÷ (tổng số − số đã thu hồi).",
        "Rate = fully electronic ÷ (all − recalled).",
    ),
    "level_pair": ("Cặp cấp", "Level pair"),
    "any": ("Tất cả", "Any"),
    "by_level_pair": ("Theo cặp cấp hành chính", "By level pair"),
    "by_sender": ("Theo cơ quan gửi", "By sending agency"),
    "by_recipient": ("Theo cơ quan nhận", "By receiving agency"),
    "by_month": ("Theo tháng", "By month"),
    "monthly_chart": ("Tỷ lệ theo tháng, từng cặp cấp", "Monthly rate per level pair"),
    "buckets_chart": ("Phân loại văn bản theo tháng", "Exchanges by bucket and month"),
    "total": ("Tổng số", "Total"),
    "denominator": ("Mẫu số", "Denominator"),
    "rate": ("Tỷ lệ", "Rate"),
    "export_csv": ("Xuất CSV", "Export CSV"),
    "grand_total": ("Tổng cộng", "Total"),
    "exchanges_title": ("Các lượt trao đổi và lý do", "Exchanges and reasons"),
    "bucket": ("Phân loại", "Bucket"),
    "reason": ("Lý do", "Reason"),
    "month": ("Tháng", "Month"),
    "back_to_rate": ("Quay lại bảng tỷ lệ", "Back to the rate"),
    "no_data": ("Không có số liệu trong khoảng thời gian này.", "No figures in this period."),
    "users_title": ("Tài khoản người dùng", "User accounts"),
    "role": ("Vai trò", "Role"),
    "agency": ("Cơ quan", "Agency"),
    "created_at": ("Ngày tạo", "Created"),
    "last_login": ("Đăng nhập gần nhất", "Last sign-in"),
    "disabled": ("Đã khóa", "Disabled"),
    "active": ("Đang hoạt động", "Active"),
    "users_hint": (
        "Tạo và khóa tài khoản bằng lệnh: gateway users add / gateway users disable.",
        "Create and disable accounts with: gateway users add / gateway users disable.",
    ),
    "error_title": ("Có lỗi", "Error"),
    "error_404": ("Không tìm thấy trang hoặc văn bản.", "The page or document was not found."),
    "error_403": ("Bạn không có quyền xem trang này.", "You may not see this page."),
    "error_400": ("Yêu cầu không hợp lệ.", "The request is not valid."),
    "error_csrf": (
        "Biểu mẫu đã hết hạn hoặc không hợp lệ. Vui lòng tải lại trang và thử lại.",
        "The form expired or is not valid. Please reload the page and try again.",
    ),
    "error_500": ("Lỗi hệ thống. Vui lòng thử lại sau.", "Internal error. Please try again later."),
    "home": ("Trang chủ", "Home"),
    "language": ("Ngôn ngữ", "Language"),
    "doc_type_0": ("Văn bản mới", "New document"),
    "doc_type_1": ("Thu hồi", "Recall"),
    "doc_type_2": ("Cập nhật", "Update"),
    "doc_type_3": ("Thay thế", "Replacement"),
    "state_queued": ("Chưa đến", "Not yet arrived"),
    "state_arrived": ("Đã đến", "Arrived"),
    "state_accepted": ("Đã tiếp nhận", "Accepted"),
    "state_assigned": ("Đã phân công", "Assigned"),
    "state_in_progress": ("Đang xử lý", "In progress"),
    "state_done": ("Hoàn thành", "Done"),
    "state_refused": ("Từ chối tiếp nhận", "Refused"),
    "state_recall_requested": ("Đang yêu cầu lấy lại", "Recall requested"),
    "state_recalled": ("Đã thu hồi", "Recalled"),
    "state_recall_refused": ("Từ chối lấy lại", "Recall refused"),
    "outcome_applied": ("Đã áp dụng", "Applied"),
    "outcome_repeat": ("Lặp lại", "Repeat"),
    "outcome_stale": ("Đến muộn, bỏ qua", "Stale, ignored"),
    "actor_sender": ("Bên gửi", "Sender"),
    "actor_recipient": ("Bên nhận", "Recipient"),
}


def translate(key: str, lang: Lang) -> str:
    """The label ``key`` in ``lang``; ``KeyError`` for a key that does not exist."""
    vi, en = _TEXT[key]
    return vi if lang == "vi" else en


def status_label(code: str, lang: Lang) -> str:
    """``"01"`` → ``"Đã đến"``/``"Arrived"``; an unknown code is shown as it is."""
    try:
        status = StatusCode(code)
    except ValueError:
        return code
    return status.vi if lang == "vi" else status.en


def parse_lang(value: str | None) -> Lang | None:
    return value if value in LANGS else None  # type: ignore[return-value]
