job "web" {
  type = "service"

  meta {
    dispenser_instance = "export-stack"
  }

  group "web" {
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

      port "p80" {
        to = 80
      }
    }

    service {
      name = "web"
      port = "p80"
      provider = "consul"
      tags = [
        "traefik.enable=true",
        "traefik.http.routers.web.rule=Host(`app.example.test`) && PathPrefix(`/`)",
        "traefik.http.routers.web.tls.certresolver=dispenser"
      ]

      check {
        type = "script"
        task = "web"
        command = "wget"
        args = [
          "-q",
          "-O",
          "/dev/null",
          "http://127.0.0.1/"
        ]
        interval = "5s"
        timeout = "2s"
      }
    }

    task "web" {
      driver = "docker"

      config {
        image = "registry.example.test/web:1"
        ports = [
          "p80"
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
          source = "local/conf/site.conf"
          target = "/etc/site.conf"
          readonly = true
        }
      }

      env {
        API_URL = "http://api:8000/"
        PATTERN = "$${HOME}"
      }

      template {
        data = "listen 80;\nroot /www;\n"
        destination = "local/conf/site.conf"
        left_delimiter = "[[dispenser-none[["
        right_delimiter = "]]dispenser-none]]"
      }

      resources {
        memory = 64
        cpu = 500
      }
    }
  }
}
