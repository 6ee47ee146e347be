{
  "targets": [
    {
      "target_name": "udp_gso",
      "sources": ["udp_gso.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
