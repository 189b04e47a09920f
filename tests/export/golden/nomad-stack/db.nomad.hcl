job "db" {
  type = "service"

  meta {
    dispenser_instance = "export-stack"
  }

  group "db" {
    count = 1

    update {
      max_parallel = 1
      canary = 1
      auto_promote = true
      auto_revert = true
      health_check = "checks"
      min_healthy_time = "5s"
      healthy_deadline = "35s"
      progress_deadline = "95s"
    }

    restart {
      attempts = 3
      mode = "delay"
    }

    network {
      mode = "bridge"

      port "p5432" {
        to = 5432
      }
    }

    service {
      name = "db"
      port = "p5432"
      provider = "consul"

      check {
        type = "script"
        task = "db"
        command = "/bin/sh"
        args = [
          "-c",
          "pg_isready -U postgres"
        ]
        interval = "2s"
        timeout = "30s"
      }
    }

    volume "volume-0" {
      type = "host"
      source = "export-db-data"
      read_only = false
    }

    task "db" {
      driver = "docker"

      config {
        image = "postgres:16"
        ports = [
          "p5432"
        ]

        logging {
          type = "json-file"

          config {
            max-file = "3"
            max-size = "10m"
          }
        }
      }

      template {
        data = "{{ with nomadVar \"nomad/jobs/db\" }}\nPOSTGRES_PASSWORD={{ .db_password }}\n{{ end }}\n"
        destination = "secrets/dispenser.env"
        env = true
      }

      volume_mount {
        volume = "volume-0"
        destination = "/var/lib/postgresql/data"
        read_only = false
      }
    }
  }
}
