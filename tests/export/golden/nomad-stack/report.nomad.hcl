job "report" {
  type = "batch"

  meta {
    dispenser_instance = "export-stack"
  }

  periodic {
    crons = [
      "30 2 * * 1-5"
    ]
    prohibit_overlap = false
    time_zone = "Europe/Zurich"
  }

  group "report" {
    count = 1

    restart {
      attempts = 0
      mode = "fail"
    }

    task "report" {
      driver = "docker"

      config {
        image = "registry.example.test/report:1"

        logging {
          type = "json-file"

          config {
            max-file = "3"
            max-size = "10m"
          }
        }
      }
    }
  }
}
