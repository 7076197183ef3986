"""Links to a terminal: LAN (HTTP), RS232 (serial tty) and Wonder's cloud relay."""
