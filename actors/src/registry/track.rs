//! Tag tracking (`[dispenser] track`): which tag of a repository a service
//! follows, and that tag's digest.

use super::{DigestSource, RegistryError, RemoteDigest};
use crate::plan::ImageRef;

/// The digest a watched image should run: the digest of its own tag, or,
/// with a `track` range, of the newest tag in the range (returned with it).
pub async fn resolve(
    source: &dyn DigestSource,
    image: &ImageRef,
    track: Option<&str>,
) -> Result<(RemoteDigest, Option<String>), RegistryError> {
    let Some(range) = track else {
        return source.digest(image).await.map(|remote| (remote, None));
    };
    let tags = source.tags(image).await?;
    let tag = newest_in(&tags, range).ok_or_else(|| RegistryError::NotFound {
        registry: image.registry.clone(),
        repository: image.repository.clone(),
        tag: format!("a tag in {range}"),
    })?;
    let tagged = ImageRef {
        original: format!("{}/{}:{tag}", image.registry, image.repository),
        tag: Some(tag.clone()),
        ..image.clone()
    };
    source
        .digest(&tagged)
        .await
        .map(|remote| (remote, Some(tag)))
}

/// The newest tag that is a semver version in `range` (`v1.2.3` counts as
/// `1.2.3`); pre-releases only where the range names one, as Cargo reads
/// ranges. Tags that are no version are ignored.
pub fn newest_in(tags: &[String], range: &str) -> Option<String> {
    let range = semver::VersionReq::parse(range).ok()?;
    tags.iter()
        .filter_map(|tag| {
            let version = semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()?;
            range.matches(&version).then_some((version, tag))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, tag)| tag.clone())
}

#[cfg(test)]
mod tests {
    use super::newest_in;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|tag| tag.to_string()).collect()
    }

    #[test]
    fn the_newest_tag_in_the_range_wins_and_a_higher_major_never() {
        let list = tags(&[
            "1.2.0",
            "v1.2.5",
            "1.10.1",
            "1.3.0-rc.1",
            "2.0.0",
            "latest",
            "1.9",
        ]);
        assert_eq!(newest_in(&list, "^1.2").as_deref(), Some("1.10.1"));
        assert_eq!(newest_in(&list, "~1.2").as_deref(), Some("v1.2.5"));
        assert_eq!(newest_in(&list, ">=2, <3").as_deref(), Some("2.0.0"));
        assert_eq!(newest_in(&list, "^3"), None);
    }

    #[test]
    fn pre_releases_count_only_where_the_range_names_one() {
        let list = tags(&["1.2.0", "1.3.0-rc.1"]);
        assert_eq!(newest_in(&list, "^1.2").as_deref(), Some("1.2.0"));
        assert_eq!(
            newest_in(&list, ">=1.3.0-rc.0").as_deref(),
            Some("1.3.0-rc.1")
        );
    }
}
