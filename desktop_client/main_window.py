"""The retailer's main window. Pages arrive with later work; for now it says what the app is for."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMainWindow, QVBoxLayout, QWidget

WELCOME = (
    "<h2>Retail Intelligence</h2>"
    "<p>Learn demand, pricing and bundle insights together with other small retailers, "
    "without your sales data ever leaving this computer.</p>"
    "<p>To check a sales export now, run <code>retail-node validate FILE</code>.</p>"
)


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Retail Intelligence")
        self.resize(960, 640)
        body = QWidget(self)
        layout = QVBoxLayout(body)
        welcome = QLabel(WELCOME, body)
        welcome.setObjectName("welcome")
        welcome.setWordWrap(True)
        welcome.setTextFormat(Qt.TextFormat.RichText)
        welcome.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(welcome)
        self.setCentralWidget(body)
