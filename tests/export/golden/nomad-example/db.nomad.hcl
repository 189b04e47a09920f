job "db" {
  type = "service"

  meta {
    dispenser_instance = "example"
  }

  group "db" {
    count = 1

    update {
      max_parallel = 1
      canary = 1
      auto_promote = true
      auto_revert = true
      health_check = "task_states"
      min_healthy_time = "5s"
      healthy_deadline = "125s"
      progress_deadline = "185s"
    }

    restart {
      attempts = 3
      mode = "delay"
    }

    volume "volume-0" {
      type = "host"
      source = "dispenser-example-db-data"
      read_only = false
    }

    task "db" {
      driver = "docker"

      config {
        image = "dispenser-example/busybox:latest"
        args = [
          "/bin/sh",
          "-c",
          "date >> /data/starts.log && touch /tmp/ready; trap 'exit 0' TERM INT; while :; do sleep 1; done"
        ]

        logging {
          type = "json-file"

          config {
            max-file = "3"
            max-size = "10m"
          }
        }
      }

      volume_mount {
        volume = "volume-0"
        destination = "/data"
        read_only = false
      }

      resources {
        memory = 32
      }
    }
  }
}
