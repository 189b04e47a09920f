job "api" {
  type = "service"

  meta {
    dispenser_instance = "example"
  }

  group "api" {
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

    task "api" {
      driver = "docker"

      config {
        image = "dispenser-example/busybox:latest"
        args = [
          "/bin/sh",
          "-c",
          "trap 'exit 0' TERM; httpd -f -p 8000 -h /srv/api & wait"
        ]
        work_dir = "/srv/api"

        logging {
          type = "json-file"

          config {
            max-file = "3"
            max-size = "10m"
          }
        }

        mount {
          type = "bind"
          source = "local/public"
          target = "/srv/api"
          readonly = true
        }
      }

      env {
        API_GREETING = "hello from the Dispenser example"
        DATABASE_HOST = "db"
      }

      template {
        data = "{\"service\": \"api\", \"status\": \"ok\"}\n"
        destination = "local/public/status.json"
        left_delimiter = "[[dispenser-none[["
        right_delimiter = "]]dispenser-none]]"
      }

      resources {
        memory = 64
      }
    }
  }
}
