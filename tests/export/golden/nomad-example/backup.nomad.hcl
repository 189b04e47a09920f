job "backup" {
  type = "batch"

  meta {
    dispenser_instance = "example"
  }

  periodic {
    crons = [
      "0 3 * * *"
    ]
    prohibit_overlap = true
  }

  group "backup" {
    count = 1

    restart {
      attempts = 0
      mode = "fail"
    }

    task "backup" {
      driver = "docker"

      config {
        image = "dispenser-example/busybox:latest"
        args = [
          "/bin/sh",
          "-c",
          "date -u +%Y-%m-%dT%H:%M:%SZ >> /backups/backup.log"
        ]

        logging {
          type = "json-file"

          config {
            max-file = "3"
            max-size = "10m"
          }
        }

        mount {
          type = "bind"
          source = "local/backups"
          target = "/backups"
          readonly = false
        }
      }

      template {
        data = ""
        destination = "local/backups/.gitkeep"
        left_delimiter = "[[dispenser-none[["
        right_delimiter = "]]dispenser-none]]"
      }
    }
  }
}
